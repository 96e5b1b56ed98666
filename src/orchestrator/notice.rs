//! The text of task outcome notices (pure; the store writes them to the
//! outbox in the transaction that records the outcome).

use crate::domain::{Task, TaskKind, TaskStatus};

const SUMMARY_MAX: usize = 1200;

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The notice for a task that reached a final status.
pub fn render_notice(task: &Task) -> String {
    match task.status {
        // An agent turn continued after an approval: its answer is the reply.
        TaskStatus::Succeeded if task.kind == TaskKind::AgentResume => {
            task.result_summary.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "(no answer)".into())
        }
        TaskStatus::Succeeded => {
            let summary = task.result_summary.as_deref().unwrap_or("(no output)");
            let mut text = format!("Task `{}` succeeded: {}\n\n{}", task.id, task.title, cut(summary, SUMMARY_MAX));
            if let Some(path) = &task.result_path {
                text.push_str(&format!("\n\nFull result: `{path}`"));
            }
            text
        }
        TaskStatus::Canceled => format!("Task `{}` canceled: {}", task.id, task.title),
        _ => format!(
            "Task `{}` failed after {} attempt(s): {}\nError: {}",
            task.id,
            task.attempts,
            task.title,
            cut(task.error.as_deref().unwrap_or("unknown error"), SUMMARY_MAX)
        ),
    }
}
