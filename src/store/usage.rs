//! LLM usage telemetry: one row per provider call with tokens, latency, model
//! and outcome.

use super::{Store, StoreError};
use crate::clock::UnixMillis;
use crate::domain::{ContextId, TaskId};
use rusqlite::params;

/// One provider call to record.
#[derive(Debug, Clone)]
pub struct UsageRecord {
    /// When the call finished.
    pub at: UnixMillis,
    /// Provider name (`openai`, `anthropic`).
    pub provider: String,
    /// Model name as reported (or requested).
    pub model: String,
    /// The task it served, if any.
    pub task_id: Option<TaskId>,
    /// The context it served, if any.
    pub context_id: Option<ContextId>,
    /// Prompt tokens, when the provider reports them.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens, when the provider reports them.
    pub completion_tokens: Option<u64>,
    /// Wall time of the call.
    pub latency_ms: u64,
    /// `ok` or the error class.
    pub outcome: String,
    /// Error text for failed calls.
    pub error: Option<String>,
}

impl Store {
    /// Appends one usage row.
    pub async fn record_usage(&self, u: UsageRecord) -> Result<(), StoreError> {
        self.write(move |c| {
            let total = match (u.prompt_tokens, u.completion_tokens) {
                (Some(p), Some(c)) => Some(p + c),
                _ => None,
            };
            c.prepare_cached(
                "INSERT INTO llm_usage (at, provider, model, task_id, context_id, prompt_tokens, completion_tokens, total_tokens, latency_ms, outcome, error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                u.at,
                u.provider,
                u.model,
                u.task_id.as_ref().map(TaskId::as_str),
                u.context_id.as_ref().map(ContextId::as_str),
                u.prompt_tokens,
                u.completion_tokens,
                total,
                u.latency_ms,
                u.outcome,
                u.error
            ])?;
            // The day's spend, kept up to date for the budget check (every call under context '', and the call's context).
            if u.prompt_tokens.is_some() || u.completion_tokens.is_some() {
                let day = u.at - u.at.rem_euclid(86_400_000);
                let mut up = c.prepare_cached(
                    "INSERT INTO llm_spend_daily (day, context_id, model, prompt_tokens, completion_tokens) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (day, context_id, model) DO UPDATE SET prompt_tokens = prompt_tokens + ?4, completion_tokens = completion_tokens + ?5",
                )?;
                let (p, k) = (u.prompt_tokens.unwrap_or(0), u.completion_tokens.unwrap_or(0));
                up.execute(params![day, "", u.model, p, k])?;
                if let Some(ctx) = u.context_id.as_ref().filter(|c| !c.as_str().is_empty()) {
                    up.execute(params![day, ctx.as_str(), u.model, p, k])?;
                }
            }
            Ok(())
        })
        .await
    }
}

/// Usage totals of one (day, provider, model).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageTotals {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Prompt tokens (as reported).
    pub prompt_tokens: u64,
    /// Completion tokens (as reported).
    pub completion_tokens: u64,
    /// Mean latency, ms.
    pub avg_latency_ms: u64,
}

impl Store {
    /// Totals per UTC day, provider and model for calls in `[since, until)`, newest day first.
    pub async fn usage_totals(&self, since: UnixMillis, until: UnixMillis) -> Result<Vec<UsageTotals>, StoreError> {
        self.read(move |c| {
            // Calls still on file, and the per-day totals of calls that
            // retention deleted (whole days: a day counts if it starts in
            // the range or the range starts inside it).
            let mut stmt = c.prepare_cached(
                "SELECT day, provider, model, SUM(calls), SUM(errors), SUM(p), SUM(k), SUM(lat) / SUM(calls) FROM ( \
                 SELECT strftime('%Y-%m-%d', at / 1000, 'unixepoch') AS day, provider, model, 1 AS calls, outcome != 'ok' AS errors, \
                 COALESCE(prompt_tokens, 0) AS p, COALESCE(completion_tokens, 0) AS k, latency_ms AS lat \
                 FROM llm_usage WHERE at >= ?1 AND at < ?2 \
                 UNION ALL \
                 SELECT strftime('%Y-%m-%d', day / 1000, 'unixepoch'), provider, model, calls, errors, prompt_tokens, completion_tokens, latency_ms_sum \
                 FROM llm_usage_daily WHERE day >= ?1 - (?1 % 86400000) AND day < ?2 \
                 ) GROUP BY day, provider, model ORDER BY day DESC, provider, model",
            )?;
            let rows = stmt.query_map(params![since, until], |r| {
                Ok(UsageTotals {
                    day: r.get(0)?,
                    provider: r.get(1)?,
                    model: r.get(2)?,
                    calls: r.get(3)?,
                    errors: r.get(4)?,
                    prompt_tokens: r.get(5)?,
                    completion_tokens: r.get(6)?,
                    avg_latency_ms: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
