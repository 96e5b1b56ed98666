//! The agent's steps: each model call and tool call of a turn, recorded as
//! it happens with an `agent.step` event in the same transaction.

use super::events::append;
use super::{Store, StoreError};
use crate::clock::UnixMillis;
use crate::domain::{ChatRef, ContextId, TaskId, TraceId};
use rusqlite::params;

/// A step to record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewStep {
    /// The task the turn runs, if any (a chat turn has none).
    pub task_id: Option<TaskId>,
    /// The context.
    pub context_id: ContextId,
    /// The turn's trace.
    pub trace_id: TraceId,
    /// 1-based within the turn.
    pub seq: u32,
    /// `model` or `tool`.
    pub kind: String,
    /// The tool, for a tool step.
    pub tool: Option<String>,
    /// Arguments (secrets redacted, capped).
    pub arguments: Option<String>,
    /// Outcome (`ok`, `error`, `answer`, …).
    pub outcome: String,
    /// Error or refusal.
    pub detail: Option<String>,
    /// Duration.
    pub duration_ms: u64,
    /// Bytes handed to the model (or of the answer).
    pub output_bytes: u64,
}

/// A recorded step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepRow {
    /// 1-based within the turn.
    pub seq: u32,
    /// `model` or `tool`.
    pub kind: String,
    /// The tool.
    pub tool: Option<String>,
    /// Arguments (redacted).
    pub arguments: Option<String>,
    /// Outcome.
    pub outcome: String,
    /// Error or refusal.
    pub detail: Option<String>,
    /// Duration.
    pub duration_ms: u64,
    /// Bytes handed to the model.
    pub output_bytes: u64,
    /// When it ended (ms).
    pub at: UnixMillis,
    /// The turn's trace (a task retried runs several turns).
    pub trace_id: String,
}

/// Most steps returned for one task.
pub const MAX_STEPS_SHOWN: u32 = 500;

impl Store {
    /// Records one step and its `agent.step` event.
    pub async fn record_step(&self, s: NewStep, now: UnixMillis) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO agent_steps (task_id, context_id, trace_id, seq, kind, tool, arguments, outcome, detail, duration_ms, output_bytes, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                s.task_id.as_ref().map(TaskId::as_str),
                s.context_id.as_str(),
                s.trace_id.as_str(),
                s.seq,
                s.kind,
                s.tool,
                s.arguments,
                s.outcome,
                s.detail,
                s.duration_ms,
                s.output_bytes,
                now
            ])?;
            let data = serde_json::json!({
                "task_id": s.task_id, "context_id": s.context_id, "trace_id": s.trace_id, "seq": s.seq, "kind": s.kind,
                "tool": s.tool, "outcome": s.outcome, "duration_ms": s.duration_ms, "output_bytes": s.output_bytes,
            });
            append(c, now, "agent.step", &data)?;
            Ok(())
        })
        .await
    }

    /// The steps of a task's turns, oldest first (at most [`MAX_STEPS_SHOWN`]).
    pub async fn task_steps(&self, task: &TaskId) -> Result<Vec<StepRow>, StoreError> {
        let task = task.clone();
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT seq, kind, tool, arguments, outcome, detail, duration_ms, output_bytes, at, trace_id
                     FROM agent_steps WHERE task_id = ?1 ORDER BY id LIMIT ?2",
                )?
                .query_map(params![task.as_str(), MAX_STEPS_SHOWN], |r| {
                    Ok(StepRow {
                        seq: r.get(0)?,
                        kind: r.get(1)?,
                        tool: r.get(2)?,
                        arguments: r.get(3)?,
                        outcome: r.get(4)?,
                        detail: r.get(5)?,
                        duration_ms: r.get(6)?,
                        output_bytes: r.get(7)?,
                        at: r.get(8)?,
                        trace_id: r.get(9)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// The last `n` free-text exchanges of a chat before the message traced
    /// `current`, oldest first: (sender's display name, their text, the
    /// reply). Commands (`/…`) and `pair` messages are left out (a pairing
    /// reply holds a token), and so are messages that got no reply.
    pub async fn recent_exchanges(
        &self,
        context: &ContextId,
        chat: &ChatRef,
        current: &TraceId,
        n: u32,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let (context, chat, current) = (context.clone(), chat.clone(), current.clone());
        self.read(move |c| {
            if n == 0 {
                return Ok(Vec::new());
            }
            let window = n.saturating_mul(4).min(400);
            let inbound: Vec<(String, String, String)> = c
                .prepare_cached("SELECT display_name, text, trace_id FROM inbox WHERE context_id = ?1 ORDER BY id DESC LIMIT ?2")?
                .query_map(params![context.as_str(), window], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let replies: std::collections::HashMap<String, String> = c
                .prepare_cached(
                    "SELECT trace_id, body FROM outbox WHERE connector = ?1 AND external_id = ?2 AND kind = 'reply' AND trace_id IS NOT NULL
                     ORDER BY id DESC LIMIT ?3",
                )?
                .query_map(params![chat.connector, chat.external_id, window], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut out: Vec<(String, String, String)> = inbound
                .into_iter()
                .filter(|(_, text, trace)| {
                    let t = text.trim();
                    trace != current.as_str() && !t.starts_with('/') && !t.eq_ignore_ascii_case("pair") && !t.is_empty()
                })
                .filter_map(|(who, text, trace)| replies.get(&trace).map(|reply| (who, text, reply.clone())))
                .take(n as usize)
                .collect();
            out.reverse();
            Ok(out)
        })
        .await
    }
}
