//! The executor for `general` tasks: the task's prompt is one agent turn
//! (task limits, the built-in tools, steps recorded with the task); the
//! answer becomes the task's summary and a markdown result file in the
//! workspace.

use super::Agent;
use super::turn::{Outcome, Stop};
use crate::BoxFuture;
use crate::clock::SharedClock;
use crate::domain::{Context, Task};
use crate::orchestrator::{ExecContext, ExecError, ExecOutput, Executor};
use crate::store::Store;
use crate::workspace::{TaskResult, Workspaces};

const SUMMARY_MAX: usize = 180;

/// Runs `general` tasks through the agent.
pub struct GeneralExecutor {
    agent: Agent,
    store: Store,
    workspaces: Workspaces,
    clock: SharedClock,
}

impl GeneralExecutor {
    /// An executor using these parts.
    pub fn new(agent: Agent, store: Store, workspaces: Workspaces, clock: SharedClock) -> Self {
        Self { agent, store, workspaces, clock }
    }

    async fn run(&self, ctx: ExecContext) -> Result<ExecOutput, ExecError> {
        let task = &ctx.task;
        let prompt = if task.prompt.trim().is_empty() { task.title.trim() } else { task.prompt.trim() };
        if prompt.is_empty() {
            return Err(ExecError::permanent("the task has neither a prompt nor a title"));
        }
        let context = context_of(&self.store, task).await?;
        let out = self.agent.task_turn(task, &context, prompt, ctx.cancel.clone()).await;
        ended(&out)?;
        let result = TaskResult { task, model: &out.model, output: &out.text, completed_at: self.clock.now_ms() };
        let path = self
            .workspaces
            .write_task_result(&result)
            .await
            .map_err(|e| ExecError::retryable(format!("cannot write the result file: {e}")))?;
        Ok(ExecOutput { summary: summarize(&out.text), result_path: Some(path) })
    }
}

/// The task's context (a store error is worth a retry).
pub(super) async fn context_of(store: &Store, task: &Task) -> Result<Context, ExecError> {
    store.get_context(&task.context_id).await.map_err(|e| ExecError::retryable(format!("cannot load the task's context: {e}")))
}

/// Whether a task's turn ended as a task succeeds: with an answer, or
/// waiting for an approval (a follow-up task continues once it is
/// decided). A limit fails the task, its reply saying which.
pub(super) fn ended(out: &Outcome) -> Result<(), ExecError> {
    match &out.stop {
        Stop::Answered | Stop::Awaiting(_) => Ok(()),
        Stop::Canceled => Err(ExecError::permanent("canceled")),
        Stop::Failed(e) => Err(super::exec_error(e)),
        Stop::Limit(_) => Err(ExecError::permanent(out.text.clone())),
    }
}

/// Whitespace collapsed, at most 180 bytes, with "..." when cut.
fn summarize(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.len() <= SUMMARY_MAX {
        return one_line;
    }
    let mut end = SUMMARY_MAX;
    while !one_line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &one_line[..end])
}

impl Executor for GeneralExecutor {
    fn execute(&self, ctx: ExecContext) -> BoxFuture<'_, Result<ExecOutput, ExecError>> {
        Box::pin(self.run(ctx))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn summaries_are_one_line_and_capped() {
        assert_eq!(super::summarize("a\n\nb"), "a b");
        let long = super::summarize(&"word ".repeat(100));
        assert!(long.len() <= 183 && long.ends_with("..."));
    }
}
