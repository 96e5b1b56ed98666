//! The executor for `general` tasks: the task's prompt goes to the LLM with
//! the context's system prompt; the answer becomes the task's summary and a
//! markdown result file in the workspace.

use super::{ChatRequest, Llm, PromptBuilder};
use crate::BoxFuture;
use crate::clock::SharedClock;
use crate::orchestrator::{ExecContext, ExecError, ExecOutput, Executor};
use crate::store::Store;
use crate::workspace::{TaskResult, Workspaces};

const SUMMARY_MAX: usize = 180;

/// Runs `general` tasks through the LLM.
pub struct GeneralExecutor {
    llm: Llm,
    prompts: PromptBuilder,
    store: Store,
    workspaces: Workspaces,
    clock: SharedClock,
}

impl GeneralExecutor {
    /// An executor using these parts.
    pub fn new(llm: Llm, prompts: PromptBuilder, store: Store, workspaces: Workspaces, clock: SharedClock) -> Self {
        Self { llm, prompts, store, workspaces, clock }
    }

    async fn run(&self, ctx: ExecContext) -> Result<ExecOutput, ExecError> {
        let task = &ctx.task;
        let prompt = if task.prompt.trim().is_empty() { task.title.trim() } else { task.prompt.trim() };
        if prompt.is_empty() {
            return Err(ExecError::permanent("the task has neither a prompt nor a title"));
        }
        let context = self
            .store
            .get_context(&task.context_id)
            .await
            .map_err(|e| ExecError::retryable(format!("cannot load the task's context: {e}")))?;
        let system = self.prompts.system_prompt(&context).await;
        let request = ChatRequest { system, user: prompt.to_string() };
        let answer = tokio::select! {
            r = self.llm.complete(request, Some(&task.id), Some(&task.context_id)) => r,
            _ = ctx.cancel.cancelled() => return Err(ExecError::permanent("canceled")),
        };
        let answer = answer.map_err(|e| ExecError { retryable: e.is_retryable(), message: e.to_string() })?;
        let text = if answer.text.is_empty() { "(the model returned an empty answer)".to_string() } else { answer.text };
        let result = TaskResult { task, model: &answer.model, output: &text, completed_at: self.clock.now_ms() };
        let path = self
            .workspaces
            .write_task_result(&result)
            .await
            .map_err(|e| ExecError::retryable(format!("cannot write the result file: {e}")))?;
        Ok(ExecOutput { summary: summarize(&text), result_path: Some(path) })
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
