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

/// A stored usage row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageRow {
    /// Row id.
    pub id: i64,
    /// Time.
    pub at: UnixMillis,
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Task, if any.
    pub task_id: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens.
    pub completion_tokens: Option<u64>,
    /// Total tokens.
    pub total_tokens: Option<u64>,
    /// Latency.
    pub latency_ms: u64,
    /// Outcome.
    pub outcome: String,
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
            Ok(())
        })
        .await
    }

    /// Usage rows of one task, oldest first.
    pub async fn usage_for_task(&self, task: &TaskId) -> Result<Vec<UsageRow>, StoreError> {
        let task = task.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, at, provider, model, task_id, prompt_tokens, completion_tokens, total_tokens, latency_ms, outcome FROM llm_usage WHERE task_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([task.as_str()], |r| {
                Ok(UsageRow {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    provider: r.get(2)?,
                    model: r.get(3)?,
                    task_id: r.get(4)?,
                    prompt_tokens: r.get(5)?,
                    completion_tokens: r.get(6)?,
                    total_tokens: r.get(7)?,
                    latency_ms: r.get(8)?,
                    outcome: r.get(9)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
