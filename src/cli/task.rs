//! `agent-runtime task list|show|create|retry|cancel`.

use super::{at, print_if, print_json, print_list, s};
use crate::client::ApiClient;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::process::ExitCode;

/// Task subcommands.
#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// List tasks, most recently changed first.
    List {
        /// Only this status (queued, running, succeeded, failed, canceled).
        #[arg(long)]
        status: Option<String>,
        /// Only this workspace.
        #[arg(long)]
        workspace_id: Option<String>,
        /// Only this context.
        #[arg(long)]
        context_id: Option<String>,
        /// At most this many (1-500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The next page: tasks older than this task id (printed at the end of a full page).
        #[arg(long)]
        before: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one task with its history.
    Show {
        /// Task id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Queue a task.
    Create(CreateArgs),
    /// Queue a failed or canceled task again (attempts start over).
    Retry {
        /// Task id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a queued or running task.
    Cancel {
        /// Task id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `task create` arguments.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// What should be done.
    #[arg(required = true)]
    prompt: Vec<String>,
    /// Title (default: the start of the prompt).
    #[arg(long)]
    title: Option<String>,
    /// Task kind.
    #[arg(long, default_value = "general")]
    kind: String,
    /// Chat the task belongs to (and where its notice goes).
    #[arg(long, default_value = "codex")]
    connector: String,
    /// Chat id on that connector.
    #[arg(long, default_value = "codex-cli")]
    external_id: String,
    /// Idempotency key: the same key never creates a second task.
    #[arg(long)]
    run_key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn print_task(t: &Value) {
    outln!("id:       {}", s(t, "id"));
    outln!("status:   {} (attempt {} of {}, version {})", s(t, "status"), t["attempts"], t["max_attempts"], t["version"]);
    outln!("kind:     {}", s(t, "kind"));
    outln!("title:    {}", s(t, "title"));
    outln!("context:  {} (workspace {})", s(t, "context_id"), s(t, "workspace_id"));
    print_if("result:   ", t, "result_summary");
    print_if("file:     ", t, "result_path");
    print_if("error:    ", t, "error_message");
}

/// Runs a task subcommand.
pub async fn run(client: ApiClient, cmd: TaskCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TaskCmd::List { status, workspace_id, context_id, limit, before, json } => {
            let mut q = vec![("limit", limit.to_string())];
            q.extend(before.map(|v| ("before", v)));
            q.extend(status.map(|v| ("status", v)));
            q.extend(workspace_id.map(|v| ("workspace_id", v)));
            q.extend(context_id.map(|v| ("context_id", v)));
            let v: Value = client.get("/api/v1/tasks", &q).await?;
            let header = format!("{:<36}  {:<9}  {:>3}  TITLE", "ID", "STATUS", "TRY");
            print_list(&v, json, "items", &header, "task", |t| {
                format!("{:<36}  {:<9}  {:>3}  {}", s(t, "id"), s(t, "status"), t["attempts"], s(t, "title"))
            });
        }
        TaskCmd::Show { id, json } => {
            let v: Value = client.get(&format!("/api/v1/tasks/{}", super::seg(&id)), &[]).await?;
            if json {
                print_json(&v);
            } else {
                print_task(&v);
                outln!("history:");
                for e in v["events"].as_array().into_iter().flatten() {
                    let when = at(e, "at");
                    let detail = e.get("detail").and_then(Value::as_str).map(|d| format!(" - {d}")).unwrap_or_default();
                    outln!("  {when}  {:<16} attempt {}{detail}", s(e, "event"), e["attempt"]);
                }
                let steps = v["steps"].as_array().map(Vec::as_slice).unwrap_or_default();
                if !steps.is_empty() {
                    outln!("agent steps:");
                    for st in steps {
                        let what = match st["tool"].as_str() {
                            Some(tool) => format!("{tool}({})", st["arguments"].as_str().unwrap_or("")),
                            None => "model".to_string(),
                        };
                        let detail = st.get("detail").and_then(Value::as_str).map(|d| format!(" - {d}")).unwrap_or_default();
                        outln!(
                            "  {:>3}. {:<14} {:>6} ms {:>7} B  {what}{detail}",
                            st["seq"],
                            s(st, "outcome"),
                            st["duration_ms"],
                            st["output_bytes"]
                        );
                    }
                }
            }
        }
        TaskCmd::Create(a) => {
            let body = json!({"prompt": a.prompt.join(" "), "title": a.title, "kind": a.kind, "connector": a.connector, "external_id": a.external_id, "run_key": a.run_key});
            let v: Value = client.post("/api/v1/tasks", &body).await?;
            if a.json {
                print_json(&v);
            } else {
                let verb = if v["created"].as_bool() == Some(true) { "queued" } else { "already exists (same run key)" };
                outln!("Task {} {verb}", s(&v["task"], "id"));
            }
        }
        TaskCmd::Retry { id, json } => {
            let v: Value = client.post(&format!("/api/v1/tasks/{}/retry", super::seg(&id)), &json!({})).await?;
            if json {
                print_json(&v);
            } else {
                outln!("Task {} queued again.", s(&v, "id"));
            }
        }
        TaskCmd::Cancel { id, json } => {
            let v: Value = client.post(&format!("/api/v1/tasks/{}/cancel", super::seg(&id)), &json!({})).await?;
            if json {
                print_json(&v);
            } else if s(&v, "outcome") == "canceled" {
                outln!("Task {id} canceled.");
            } else {
                outln!("Task {id} is running; asked it to stop.");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
