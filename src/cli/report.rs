//! `agent-runtime usage` and `agent-runtime audit list`: read-only reports.

use super::{at, print_json, s};
use crate::client::ApiClient;
use clap::Subcommand;
use serde_json::Value;
use std::process::ExitCode;

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Audit rows, newest first.
    List {
        /// Only this actor (`user:<id>`, `cert:<name>`, `unlinked:...`).
        #[arg(long)]
        actor: Option<String>,
        /// Only this event, or events starting with it when it ends in `.` (e.g. `approval.`).
        #[arg(long)]
        event: Option<String>,
        /// Only this chat's connector (with --external-id).
        #[arg(long)]
        connector: Option<String>,
        /// Only this chat's id (with --connector).
        #[arg(long)]
        external_id: Option<String>,
        /// Only the last N hours.
        #[arg(long)]
        hours: Option<u32>,
        /// At most this many (1-1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `audit list`.
pub async fn audit(client: ApiClient, cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    let AuditCmd::List { actor, event, connector, external_id, hours, limit, json } = cmd;
    let mut q = vec![("limit", limit.to_string())];
    q.extend(actor.map(|v| ("actor", v)));
    q.extend(event.map(|v| ("event", v)));
    q.extend(connector.map(|v| ("connector", v)));
    q.extend(external_id.map(|v| ("external_id", v)));
    if let Some(h) = hours {
        q.push(("since", (chrono::Utc::now().timestamp_millis() - i64::from(h) * 3_600_000).to_string()));
    }
    let v: Value = client.get("/api/v1/audit", &q).await?;
    if json {
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = v["events"].as_array().cloned().unwrap_or_default();
    outln!("{:<20}  {:<26}  {:<24}  {:<5}  REASON", "AT", "ACTOR", "EVENT", "DEC");
    for e in &rows {
        let when = at(e, "at");
        outln!("{:<20}  {:<26}  {:<24}  {:<5}  {}", when, s(e, "actor"), s(e, "event"), s(e, "decision"), s(e, "reason"));
    }
    outln!("{} row(s)", rows.len());
    Ok(ExitCode::SUCCESS)
}

/// Runs `usage`.
pub async fn usage(client: ApiClient, days: u32, json: bool) -> anyhow::Result<ExitCode> {
    let since = chrono::Utc::now().timestamp_millis() - i64::from(days.max(1)) * 86_400_000;
    let v: Value = client.get("/api/v1/usage", &[("since", since.to_string())]).await?;
    if json {
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<10}  {:<10}  {:<28}  {:>6}  {:>5}  {:>10}  {:>10}  {:>8}  {:>9}",
        "DAY",
        "PROVIDER",
        "MODEL",
        "CALLS",
        "ERR",
        "PROMPT",
        "COMPL",
        "AVG MS",
        "COST USD"
    );
    for r in v["items"].as_array().into_iter().flatten() {
        let cost = r["cost_usd"].as_f64().map_or_else(|| "-".to_string(), |c| format!("{c:.4}"));
        outln!(
            "{:<10}  {:<10}  {:<28}  {:>6}  {:>5}  {:>10}  {:>10}  {:>8}  {:>9}",
            s(r, "day"),
            s(r, "provider"),
            s(r, "model"),
            r["calls"],
            r["errors"],
            r["prompt_tokens"],
            r["completion_tokens"],
            r["avg_latency_ms"],
            cost
        );
    }
    let t = &v["totals"];
    outln!(
        "total: {} calls ({} failed), {} prompt + {} completion tokens, ${:.4} for the {} priced calls",
        t["calls"],
        t["errors"],
        t["prompt_tokens"],
        t["completion_tokens"],
        t["cost_usd"].as_f64().unwrap_or(0.0),
        t["priced_calls"]
    );
    if v["budget"].is_object() {
        super::agent::budget_lines(&v["budget"]).iter().for_each(|l| outln!("{l}"));
    }
    Ok(ExitCode::SUCCESS)
}
