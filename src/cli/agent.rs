//! `agent-runtime agent pause|resume|status` (the kill switch) and
//! `agent-runtime context budget` (a chat's daily limits), through the
//! admin API; and the budget lines `usage` prints.

use super::{at, print_json, s};
use crate::client::ApiClient;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

/// `agent` subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Stop every model call at once (admin). Queued work waits; nothing is lost.
    Pause {
        /// Why (kept with the switch and in the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Allow model calls again (admin); queued tasks run at once.
    Resume {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The switch and today's spend against the limits.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `agent` subcommand.
pub async fn run(client: ApiClient, cmd: AgentCmd) -> anyhow::Result<ExitCode> {
    let (v, json): (Value, bool) = match cmd {
        AgentCmd::Pause { reason, json } => (client.post("/api/v1/agent/pause", &json!({ "reason": reason })).await?, json),
        AgentCmd::Resume { json } => (client.post("/api/v1/agent/resume", &json!({})).await?, json),
        AgentCmd::Status { json } => (client.get("/api/v1/agent", &[]).await?, json),
    };
    if json {
        print_json(&v);
    } else {
        budget_lines(&v).iter().for_each(|l| outln!("{l}"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Sets a context's daily limits (`None` or 0: no limit).
pub async fn set_context_budget(client: ApiClient, context_id: &str, tokens: Option<u64>, usd: Option<f64>) -> anyhow::Result<ExitCode> {
    let v: Value = client
        .post(&format!("/api/v1/contexts/{}/budget", super::seg(context_id)), &json!({ "daily_tokens": tokens, "daily_usd": usd }))
        .await?;
    budget_lines(&v).iter().for_each(|l| outln!("{l}"));
    Ok(ExitCode::SUCCESS)
}

/// A standing as the API sent it, described (one the CLI cannot read says so).
fn standing(v: &Value) -> String {
    serde_json::from_value::<crate::budget::Standing>(v.clone()).map_or_else(|e| format!("(unreadable: {e})"), |s| s.describe())
}

/// The switch and the spend against the limits, one fact a line (a
/// `BudgetReport` as JSON).
pub fn budget_lines(r: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if r["paused"].as_bool().unwrap_or(false) {
        let sw = &r["switch"];
        let why = sw["reason"].as_str().map(|w| format!(": {w}")).unwrap_or_default();
        out.push(format!("agent: PAUSED by {} at {}{why}", s(sw, "set_by"), at(sw, "updated_at")));
    } else {
        out.push("agent: running".to_string());
    }
    out.push(format!("today ({} UTC): {}", s(r, "day"), standing(&r["global"])));
    if let Some(t) = r["task_tokens"].as_u64() {
        out.push(format!("each task: at most {t} tokens"));
    }
    for c in r["contexts"].as_array().into_iter().flatten() {
        out.push(format!("context {}: {}", s(c, "context_id"), standing(c)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_lines_show_the_switch_and_spend_against_each_limit() {
        let r = json!({
            "day": "2026-03-01", "paused": true,
            "switch": {"paused": true, "reason": "spike", "set_by": "cert:ops", "updated_at": 0},
            "global": {"tokens": 1200, "usd": 0.5, "limits": {"tokens": 1000, "usd": null}},
            "task_tokens": 5000,
            "contexts": [{"context_id": "c1", "tokens": 3, "usd": 0.0, "limits": {"tokens": null, "usd": 2.0}}],
        });
        assert_eq!(
            budget_lines(&r),
            [
                "agent: PAUSED by cert:ops at 1970-01-01T00:00:00Z: spike",
                "today (2026-03-01 UTC): 1200 of 1000 tokens, $0.5000 (no limit)",
                "each task: at most 5000 tokens",
                "context c1: 3 tokens (no limit), $0.0000 of $2.00",
            ]
        );
    }
}
